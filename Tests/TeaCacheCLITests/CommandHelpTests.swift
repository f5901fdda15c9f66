import ArgumentParser
import Foundation
import Testing
import TeaCacheDemo
@testable import TeaCacheCLI

/// README.md and `--help` agree: the *Commands* table lists exactly the options of every command's help,
/// and every preset name the *Model families* table gives is one `teacache presets` lists.
@Suite struct CommandHelpTests {
    static let readme: String = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("README.md")
        return (try? String(contentsOf: url, encoding: .utf8)) ?? ""
    }()

    /// The table rows of the README section headed `heading` (up to the next heading), split into cells.
    static func tableRows(under heading: String) -> [[String]] {
        guard let start = readme.range(of: "\n" + heading + "\n") else { return [] }
        let rest = readme[start.upperBound...]
        let end = rest.range(of: "\n#")?.lowerBound ?? rest.endIndex
        return rest[..<end].split(separator: "\n").filter { $0.hasPrefix("| ") }.map { line in
            // Split on cell bars, not on escaped ones (`\|`).
            line.replacingOccurrences(of: "\\|", with: "\u{1}").split(separator: "|", omittingEmptySubsequences: false)
                .dropFirst().dropLast().map { $0.replacingOccurrences(of: "\u{1}", with: "|").trimmingCharacters(in: .whitespaces) }
        }
    }

    /// The `--long` options named in backticks in `text`.
    static func options(in text: String) -> Set<String> {
        Set(text.split(separator: "`", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
            .filter { $0.hasPrefix("--") && !$0.contains(" ") })
    }

    /// The `--long` options of a command's help, without the ones every command has.
    static func helpOptions(_ command: any ParsableCommand.Type) -> Set<String> {
        let help = TeaCacheCommand.helpMessage(for: command)
        var out = Set<String>()
        guard let options = help.range(of: "OPTIONS:") else { return out }
        for line in help[options.upperBound...].split(separator: "\n") {
            // An option line starts with "--name" or "-n, --name", then a value placeholder or the help.
            var tokens = line.split(separator: " ")[...]
            if let first = tokens.first, first.count == 3, first.hasPrefix("-"), first.hasSuffix(",") { tokens = tokens.dropFirst() }
            guard let token = tokens.first, token.hasPrefix("--") else { continue }
            let name = String(token.prefix { $0 != "<" && $0 != "," })
            if name.dropFirst(2).allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) { out.insert(name) }
        }
        return out.subtracting(["--help", "--version", "--log-level"])
    }

    static let commands: [(String, any ParsableCommand.Type)] = [
        ("teacache demo", DemoCommand.self), ("teacache calibrate", CalibrateCommand.self),
        ("teacache presets", PresetsCommand.self), ("teacache verify DIR", VerifyCommand.self),
        ("teacache inspect FILE", InspectCommand.self), ("teacache bench kernels", BenchKernelsCommand.self),
        ("teacache bench forward", BenchForwardCommand.self), ("teacache quantize", QuantizeCommand.self),
    ]

    @Test func readmeCommandsTableListsEveryOptionOfEveryHelp() throws {
        let rows = Self.tableRows(under: "## Commands")
        #expect(rows.count == Self.commands.count + 1, "one row per command plus the header")
        for (name, type) in Self.commands {
            let row = try #require(rows.first { $0.first == "`\(name)`" }, "README has no row for \(name)")
            let listed = Self.options(in: row[2])
            let help = Self.helpOptions(type)
            #expect(!help.isEmpty || type == InspectCommand.self || type == PresetsCommand.self)
            #expect(listed == help, "\(name): README lists \(listed.sorted()), --help has \(help.sorted())")
        }
        #expect(TeaCacheCommand.configuration.subcommands.count + 1 == Self.commands.count, "bench has two subcommands")
    }

    @Test func readmePresetNamesAreRealPresets() throws {
        let rows = Self.tableRows(under: "## Model families").dropFirst()
        #expect(rows.count >= 8)
        var names: [String] = []
        for row in rows {
            // The preset names come before the first ';' of the fourth column.
            let cell = row[3].split(separator: ";").first.map(String.init) ?? ""
            names += cell.split(separator: "`", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
            // The first column is a --model name.
            let model = row[0].trimmingCharacters(in: CharacterSet(charactersIn: "`"))
            #expect(DemoFamily.modelNames.contains(model), "\(model)")
        }
        #expect(names.count >= 20)
        for name in names { #expect(PresetCatalog.entry(named: name) != nil, "README names preset \(name), which does not exist") }
    }
}

/// `teacache presets`: one line per built-in preset, with its kind, family, thresholds and source.
@Suite struct PresetsCommandTests {
    @Test func listsEveryPresetWithFamilyThresholdsAndSource() {
        let entries = PresetCatalog.entries
        let lines = PresetsCommand.render(entries).split(separator: "\n")
        #expect(lines.count == entries.count + 1)
        #expect(lines[0].hasPrefix("name") && lines[0].contains("family") && lines[0].contains("source"))
        let flux = lines.first { $0.hasPrefix("flux ") }
        #expect(flux?.contains("default 0.6; 0.25 → 1.5×, 0.4 → 1.8×, 0.6 → 2×, 0.8 → 2.25×") == true)
        #expect(flux?.contains("TeaCache4FLUX/teacache_flux.py") == true)
        #expect(lines.contains { $0.hasPrefix("magcache:flux ") && $0.contains("magcache") })
        #expect(lines.contains { $0.hasPrefix("wan2.1_t2v_14b ") && $0.contains("wan21") })
        #expect(lines.contains { $0.hasPrefix("hidream_i1 ") && $0.contains("TeaCache4HiDream-I1") })
    }

    @Test func modelAliasesAndPresetNamesParseAndValidate() throws {
        for name in ["tangoflux", "wan2.1_t2v_14b", "cogvideox_2b"] {
            let demo = try #require(try TeaCacheCommand.parseAsRoot(["demo", "--model", name]) as? DemoCommand)
            #expect(demo.modelOptions.source.family == name)
            try DemoOptions(source: demo.modelOptions.source).validate()
        }
    }
}
