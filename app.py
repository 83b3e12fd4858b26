"""sluice: wiring only. Each handler hands its AWS event to chalicelib and shapes the answer."""

from chalice import Chalice

app = Chalice(app_name="sluice")
