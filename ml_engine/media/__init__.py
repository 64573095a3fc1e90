"""Media in and out without the ML stack: videos through PyAV (``video``), stills and rasters
through GDAL (``raster``), and the submit-time checks of an image (``image_probe``).

The API validates uploads with these modules, and its image ships only this package of the
engine, so nothing here imports torch, transformers, supervision or another engine module
(tests/test_import_rules.py checks both). Importing the package imports none of its modules:
``import ml_engine.media.video`` loads PyAV, not rasterio.
"""
