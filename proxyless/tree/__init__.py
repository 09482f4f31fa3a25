"""Tree-cell PyramidNets: the paper's CIFAR-10 network family (issue 18).

    arch.py      the architecture as data: backbone, tree cells, edge ops; arch.json I/O
    ops.py       the edge ops' records (conv, separable conv, pooling, identity) and their modules
    net.py       the standalone `nn.Module` (no search code)
    legacy.py    import from and export to the original authors' `PyramidTreeNet` configuration format
    space.py     the search space: the backbone and a cell template whose edges list candidate ops; presets
                 `tree-tiny` and `proxyless-cifar-tree` (the published net is one of its nets)
    supernet.py  the supernet the search runs on: a binarized `MixedOp` on every searched edge

A search over a tree space is `proxyless search --space tree-tiny` (or a space file), with the same
strategies, latency target and derive rules as an MBConv search; its latency tables' keys are in
`proxyless.latency.tree_keys`.
"""
