"""The networks: the paper's dense toy network and MLP (``models``: :class:`DenseNet`, the
selection of weights θ, flattening of masks) and the CIFAR pre-activation ResNet (``resnet``)."""
