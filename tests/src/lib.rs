//! Test-only crate; see tests/tests. `fuzz` holds the bodies of the fuzz targets, shared by
//! cargo-fuzz (`fuzz/`, `make fuzz`) and the short corpus run of `make test`.

pub mod fuzz;
