"""licrt plugins: fused kernels that replace standard-op subgraphs of exported graphs.

Each plugin has one op id shared by its math reference, its ONNX op (with a
standard-op function body, so every backend can run it) and, later, its GPU
kernel and TensorRT registration.
"""
