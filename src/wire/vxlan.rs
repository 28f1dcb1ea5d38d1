//! vxlan (in progress)
