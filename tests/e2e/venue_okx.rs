//! okx through keyward end to end: not written yet.
