import Testing

/// The tests that start `leasectl` processes. Serialized, so that their timings are not distorted by
/// each other on small machines; their nested suites live in the other files of this target.
@Suite(.serialized) struct ProcessTests {}
