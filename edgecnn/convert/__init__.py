"""Host side: conversion and quantisation (imports TensorFlow when a converter runs)."""

from edgecnn._tfenv import prepare

prepare()
