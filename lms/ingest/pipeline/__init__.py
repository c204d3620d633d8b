"""The source-independent half of `lms mon`: when to flush, and the one task owning the buffer."""
