"""Homography estimation (issue 5): geometry, DeepLK-style pair data, the DLKFM feature pyramid with an
inverse-compositional Lucas-Kanade layer, and the classical SIFT + RANSAC baseline."""
