//! ethernet (in progress)
