from tests.support.ingest import get, ingest

CSV = b"""region,origin_coord,destination_coord,datetime,datasource
Turin,POINT (7.67283791328688 44.995710924205),POINT (7.72036863753512 45.0678238539384),2018-05-21 02:54:04,baba_car
Prague,POINT (14.4973794438195 50.00136875782316),POINT (14.43109483523328 50.04052930943246),2018-05-28 09:03:40,cheap_mobile
"""


def test_smoke(client, aws):
    ingestion = ingest(client, aws, "trips/smoke.csv", CSV)
    assert ingestion["status"] == "done", ingestion
    assert ingestion["rows_loaded"] == 2
    trips = get(client, "/trips")["items"]
    assert [t["region"] for t in trips] == ["Turin", "Prague"]
