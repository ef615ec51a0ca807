//! A recording fake of the proxy's cold-start requests.

use super::script::Journal;
use crate::data_plane::proxy::ColdStartRequester;

/// Records the functions it is asked to cold-start, in order.
#[derive(Debug, Default)]
pub struct FakeColdStarts {
    journal: Journal<String>,
}

impl FakeColdStarts {
    /// The requested functions so far.
    pub fn journal(&self) -> &Journal<String> {
        &self.journal
    }
}

impl ColdStartRequester for FakeColdStarts {
    fn request(&self, function: &str) {
        self.journal.record(function.to_owned());
    }
}
