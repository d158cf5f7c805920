"""Data readers and generators: procedural shapes, ModelNet40 HDF5, Stanford bunny scans, registration pairs."""
