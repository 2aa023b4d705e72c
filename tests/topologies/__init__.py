"""Tests on real Redis topologies (Sentinel, Cluster) started on loopback."""
