//! The control plane: leases, the table writer, subnet.env (in progress).
