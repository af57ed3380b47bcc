"""One module per experiment: ``toy`` (Figure 1 and Table 1), ``fashion_mlp`` (seed 002's MLP),
``resnet`` (the paper's ResNet tables, with ``resnet_network``: one trained ResNet evaluated),
and the studies ``training_length`` and
``protocol_study``.  A pipeline names its grid and outputs; training, checkpoints, Taylor
records, statistics and report writing are common code below it."""
