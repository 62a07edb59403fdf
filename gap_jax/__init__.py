"""gap_jax: global average pooling and the other global pooling heads, in JAX/Flax."""
