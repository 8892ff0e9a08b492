//! Model families: each trains checkpoints of one proxy task and reports its
//! proxy metric. Each has a `Config`, takes a `Device`, and seeds from the job.

pub mod ae;
