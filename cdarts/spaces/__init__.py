"""Search spaces behind one interface (``base.SearchSpace``); ``registry`` finds them by name."""
