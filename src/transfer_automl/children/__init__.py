"""Child models: config -> network, embedding modules, Proximal Adagrad, the trainer."""
