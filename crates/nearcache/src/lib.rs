//! nearcache: the proxy.
