"""The other classic CNNs, buildable for comparison: AlexNet (hand-built), VGG-16, ResNet-50, Inception-v3."""

from __future__ import annotations

from edgecnn.host.models._keras import application, keras


def alexnet(*, input_shape, num_classes, imagenet=False, dropout=0.5):
    """AlexNet (Krizhevsky et al. 2012), single-tower, without local response normalisation."""
    k = keras()
    L = k.layers
    inputs = k.Input(shape=input_shape, name="input")
    x = L.Conv2D(96, 11, strides=4, activation="relu", name="conv1")(inputs)
    x = L.MaxPooling2D(3, 2, name="pool1")(x)
    x = L.Conv2D(256, 5, padding="same", activation="relu", name="conv2")(x)
    x = L.MaxPooling2D(3, 2, name="pool2")(x)
    x = L.Conv2D(384, 3, padding="same", activation="relu", name="conv3")(x)
    x = L.Conv2D(384, 3, padding="same", activation="relu", name="conv4")(x)
    x = L.Conv2D(256, 3, padding="same", activation="relu", name="conv5")(x)
    x = L.MaxPooling2D(3, 2, name="pool5")(x)
    x = L.Flatten(name="flatten")(x)
    for i in (6, 7):
        x = L.Dense(4096, activation="relu", name=f"fc{i}")(x)
        x = L.Dropout(dropout, name=f"drop{i}")(x)
    outputs = L.Dense(num_classes, activation="softmax", name="predictions")(x)
    return k.Model(inputs, outputs, name="alexnet")


def vgg16(**options):
    return application(keras().applications.VGG16, "vgg16", **options)


def resnet50(**options):
    return application(keras().applications.ResNet50, "resnet50", **options)


def inception_v3(**options):
    return application(keras().applications.InceptionV3, "inception_v3", **options)
