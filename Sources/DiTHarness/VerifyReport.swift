import DiTModels
import Foundation

/// One comparison made by `teacache verify`.
public struct VerifyCheck: Sendable {
    /// What was compared, e.g. "forward output".
    public var name: String
    /// The measured error, e.g. "rel L2 3.1e-07".
    public var measurement: String
    /// Whether it is within tolerance.
    public var passed: Bool

    /// A check result.
    public init(name: String, measurement: String, passed: Bool) {
        self.name = name
        self.measurement = measurement
        self.passed = passed
    }

    /// `name  measurement  PASS|FAIL`, aligned.
    public var line: String {
        let padded = name.count < 40 ? name + String(repeating: " ", count: 40 - name.count) : name + " "
        return padded + measurement + "  " + (passed ? "PASS" : "FAIL")
    }
}

/// The outcome of verifying one fixture folder.
public struct VerifyReport: Sendable {
    /// The family name.
    public var family: String
    /// Every comparison, in the order made.
    public var checks: [VerifyCheck]
    /// What was not checked, and why (e.g. a recorded policy this implementation lacks).
    public var notes: [String] = []

    /// True when every check passed (and there was at least one).
    public var passed: Bool { !checks.isEmpty && checks.allSatisfy(\.passed) }

    /// One line per check, the notes, then `verify FAMILY: PASS|FAIL`.
    public var lines: [String] { checks.map(\.line) + notes + ["verify \(family): \(passed ? "PASS" : "FAIL")"] }
}

/// Formats an error figure for a check line.
func formatError(_ x: Double) -> String {
    x.isFinite ? String(format: "%.1e", x) : "\(x)"
}
