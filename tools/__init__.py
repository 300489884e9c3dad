"""Tools around the product: the data generator, recording and replay, the pipeline benchmark."""
