"""Host side: conversion and quantisation (imports TensorFlow when a converter runs)."""

from edgecnn.host._tfenv import prepare

prepare()
