import DiTModels

/// A family the harness was asked to drive does not conform to `DiTFamilyHarness`.
public enum HarnessError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The family `name` can be loaded and sampled, but has no benchmark shape or fixture reading.
    case noHarness(family: String)

    public var description: String {
        switch self {
        case .noHarness(let family):
            return "family \"\(family)\" is registered but does not conform to DiTFamilyHarness "
                + "(benchmark shape and fixture reading); conform to it to verify, benchmark or demo it"
        }
    }
}

extension DiTFamilies {
    /// Every registered family the harness can drive (verify, bench, demo, calibrate), in lookup order.
    public static var harnessed: [any DiTFamilyHarness.Type] { all.compactMap { $0 as? any DiTFamilyHarness.Type } }

    /// The harness of the family that loads the diffusers class `className`.
    /// - Throws: `ModelLoadError.wrongClass` listing every known class; ``HarnessError/noHarness(family:)``.
    public static func harness(forClass className: String) throws -> any DiTFamilyHarness.Type {
        try harness(of: family(forClass: className))
    }

    /// The harness of the family called `name`.
    /// - Throws: `ModelLoadError.unknownFamily`; ``HarnessError/noHarness(family:)``.
    public static func harness(named name: String) throws -> any DiTFamilyHarness.Type {
        try harness(of: family(named: name))
    }

    static func harness(of family: any DiTFamily.Type) throws(HarnessError) -> any DiTFamilyHarness.Type {
        guard let h = family as? any DiTFamilyHarness.Type else { throw .noHarness(family: family.name) }
        return h
    }
}
