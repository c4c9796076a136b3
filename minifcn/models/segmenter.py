"""What every FCN here offers besides its layers: the input it takes, and `predict`."""


class Segmenter:
    """Mixed into the FCNs (fcn.py, alexnet.py) before Module."""

    def forward(self, data):
        """Class scores for every pixel of a batch of preprocessed images.

        data: a Tensor (N, 3, H, W) of float32 on the net's device (mf.Tensor(array);
        a NumPy array is refused), each image preprocessed as the net's weights expect:
        channels in that order, scaled and mean-subtracted (data/preprocess.py; the
        preprocessing of a checkpoint is `mf.load_checkpoint(path).preprocess`). Any
        H and W: the net pads and crops back to them.
        Returns a Tensor (N, n_class, H, W) of unnormalized scores; argmax over axis 1
        is each pixel's class. To label a picture directly, use `predict`.
        """
        raise NotImplementedError

    def predict(self, image):
        """int64 (H, W) class numbers for one uint8 (H, W, 3) RGB picture: preprocessed
        (self.preprocess, which mf.load_checkpoint sets, else the convention of the
        loaded VGG16 weights, else Caffe's), run in eval mode without a graph, argmax."""
        from ..inference import predict_picture
        return predict_picture(self, image)
