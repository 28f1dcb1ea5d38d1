//! Subnet table (in progress).
