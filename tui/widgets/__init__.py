"""Widgets of the console: charts, banners, job progress."""
