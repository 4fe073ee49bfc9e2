"""Multi-node search on Kubeflow Trainer v2: the TrainJob a KFP task creates, follows and cleans up.

``spec`` builds the TrainJob (pure data), ``client`` runs it through the Kubernetes API, and
``node_data`` is what each node's processes do around the search (fetch the dataset, publish).
"""
