/// Left-aligned columns separated by three spaces, like kubectl's tabular output.
struct TextTable: Sendable {
    /// The column widths, fixed by the first rows (later, wider cells overflow rather than re-layout).
    private(set) var widths: [Int]

    /// A table sized to fit `header` and `rows`.
    init(header: [String], rows: [[String]]) {
        widths = header.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
    }

    /// One line of the table (no trailing spaces).
    func line(_ cells: [String]) -> String {
        var out = ""
        for (i, cell) in cells.enumerated() {
            if i == cells.count - 1 {
                out += cell
            } else {
                let width = i < widths.count ? widths[i] : cell.count
                out += cell + String(repeating: " ", count: max(0, width - cell.count) + 3)
            }
        }
        return out
    }

    /// The header and rows laid out with widths fitting all of them.
    static func render(header: [String], rows: [[String]]) -> [String] {
        let table = TextTable(header: header, rows: rows)
        return [table.line(header)] + rows.map(table.line)
    }
}
