"""The counting benchmark: synthetic drone flyovers with exact ground truth.

    scene    scenarios, the world (ground, herds, trees) and the camera path; ground truth
    render   draws a frame of a scene (ground texture, animal sprites, tree canopies)
    oracle   a noisy detector that answers from the ground truth, with a resolution limit
    columns  the trackers compared: the product's counting stage and ``trackers`` variants
    metrics  count error and TrackEval's CLEAR (ID switches), Identity (IDF1) and HOTA
    runner   renders and caches each sequence, runs the columns, the full pipeline on one seed
    report   the table (markdown) and the JSON document

Entry point: ``bench/counting_bench.py``.
"""
