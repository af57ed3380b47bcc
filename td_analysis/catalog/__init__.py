"""Plain data the command line reads before torch is imported: the data sets (``datasets``),
the regularisers' configuration (``regularisers``) and the names of experiments, presets and
regulariser families (``names``)."""
