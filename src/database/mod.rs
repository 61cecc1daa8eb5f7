//! Database providers of SPEC §4, each pure I/O against its backend.

pub mod external;
