"""Survey flights counted once per animal: grids of overlapping stills.

* ``dedup``: sightings on the ground joined into animals (clusters), edge-cut boxes included;
* ``camera``: a drone JPEG's EXIF GPS, DJI XMP attitude and altitude, and its camera;
* ``footprint``: a near-nadir shot's pixels on the ground, in a local metric frame;
* ``registration``: overlapping shots registered visually to refine their footprints;
* ``grid``: the job's shots placed one by one (metadata, then registration).
"""
