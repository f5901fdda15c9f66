extension TeaCachePreset {
    /// A preset of published reference values (coefficients copied from a reference implementation),
    /// without validation: for constants that a test suite checks once (call ``validate()`` to check
    /// one). Model families declare theirs with this initialiser next to their models.
    public init(
        reference name: String, _ coefficients: [Double], defaultThreshold: Double,
        speedups: [(threshold: Double, speedup: Double)] = [], modulatedInput: String, provenance: String,
        schedule: TeaCacheSchedule = .standard
    ) {
        self.name = name
        self.coefficients = coefficients
        self.defaultThreshold = defaultThreshold
        self.speedups = speedups.map { ThresholdSpeedup(threshold: $0.threshold, speedup: $0.speedup) }
        self.calibratedRange = nil
        self.modulatedInput = modulatedInput
        self.provenance = provenance
        self.schedule = schedule
    }
}
