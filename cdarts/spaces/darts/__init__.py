"""The DARTS cell space: normal and reduction cells of mixed edges, the CIFAR or ImageNet skeleton."""
