"""``watchkeeper report``: a self-contained HTML report of what the monitor saw, per model.

Modules: ``records`` (the replay output's records, validated and grouped by model),
``topics`` (the same records from the live topics), ``histograms`` (reference vs window
counts), ``thresholds``, the charts (``timeline``, ``drift_figures``, ``label_figures``),
``tables``, ``sections`` (one model's part), ``html`` (the page) and ``command`` (the CLI).
"""
