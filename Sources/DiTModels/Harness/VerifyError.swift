/// Problems with a fixture folder that stop `teacache verify` before any comparison can be made.
public enum VerifyError: Error, Sendable, CustomStringConvertible {
    /// A required file is missing or unreadable.
    case unreadableFile(path: String, reason: String)
    /// A JSON file does not have the documented structure (FORMAT.md).
    case malformedFixture(file: String, reason: String)
    /// A tensor the format requires is absent.
    case missingTensor(name: String, file: String)
    /// No registered family handles the folder.
    case unknownFamily(String)
    /// The fixture asks for something this implementation does not support.
    case unsupported(String)

    public var description: String {
        switch self {
        case let .unreadableFile(path, reason): return "cannot read \(path): \(reason)"
        case let .malformedFixture(file, reason): return "\(file): \(reason)"
        case let .missingTensor(name, file): return "\(file) has no tensor \"\(name)\""
        case let .unknownFamily(reason): return "unknown model family: \(reason)"
        case let .unsupported(reason): return "unsupported fixture: \(reason)"
        }
    }
}
