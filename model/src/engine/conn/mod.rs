//! (being written)

#[cfg(test)]
pub(crate) mod testkit;
