//! sea-orm entities, one per table of `asdsweep-migrations`.

pub mod artifact;
pub mod job;
pub mod job_dep;
pub mod result;
pub mod result_metric;
pub mod sweep;
pub mod worker;
