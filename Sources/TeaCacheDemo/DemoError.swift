import TeaCache

/// Errors of `teacache demo` and `teacache calibrate`. Every case says what to change.
public enum DemoError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A command-line option has an unusable value.
    case invalidOption(String)
    /// `--model` names no registered family.
    case unknownModel(String, available: [String])
    /// The model could not be built (configuration, weights, inputs).
    case model(String)
    /// A file could not be read or written.
    case io(String)
    /// A TeaCache error (configuration, calibration, sampling).
    case teaCache(TeaCacheError)

    public var description: String {
        switch self {
        case let .invalidOption(reason):
            return "invalid option: \(reason)"
        case let .unknownModel(name, available):
            return "unknown model '\(name)'; available: \(available.joined(separator: ", "))"
        case let .model(reason):
            return "cannot build the model: \(reason)"
        case let .io(reason):
            return "I/O error: \(reason)"
        case let .teaCache(e):
            return e.description
        }
    }

    /// Wraps any error thrown by the model or TeaCache in a ``DemoError``.
    static func wrap(_ error: any Error) -> DemoError {
        if let e = error as? DemoError { return e }
        if let e = error as? TeaCacheError { return .teaCache(e) }
        return .model("\(error)")
    }
}
