"""Compile-time half of edgeskip (Korol et al., Sec. II-A.2): export the gCNN to ONNX, compile it with IREE
for a board, and pack a deployable bundle. One concern per module: export, onnx_gates, iree, elf, bundle."""
