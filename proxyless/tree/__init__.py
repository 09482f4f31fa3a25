"""Tree-cell PyramidNets: the paper's CIFAR-10 network family (issue 18).

    arch.py    the architecture as data: backbone, tree cells, edge ops; arch.json I/O
    ops.py     the edge ops' records (conv, separable conv, pooling, identity) and their modules
    net.py     the standalone `nn.Module` (no search code)
    legacy.py  import from and export to the original authors' `PyramidTreeNet` configuration format

The search over tree cells (part 3 of the issue) is not here yet.
"""
