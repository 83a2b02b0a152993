using Microsoft.ML.Data;

namespace Microsoft.ML.Bone.Cli;

/// <summary>Loads TSV / CSV files with a header row, choosing columns by their header names.</summary>
internal static class CliData
{
    /// <summary>
    /// The named text columns (as String), and optionally a label column (String, or Single for regression). The
    /// separator follows the extension: .csv → comma with quoting, anything else → tab without quoting.
    /// </summary>
    public static IDataView Load(MLContext ml, string path, IReadOnlyList<(string Header, string Column)> textColumns, (string Header, string Column, bool Numeric)? label)
    {
        path = Microsoft.ML.Bone.IO.InputFile.Resolve(path);
        bool csv = path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase);
        char separator = csv ? ',' : '\t';
        string header = File.ReadLines(path).FirstOrDefault() ?? throw new InvalidDataException($"{path}: the file is empty.");
        string[] names = header.Split(separator).Select(h => h.Trim().Trim('"')).ToArray();
        CheckRows(path, separator, csv, names.Length);
        int Index(string name) => Array.IndexOf(names, name) is var i and >= 0 ? i : throw new ArgumentException($"{path}: no column '{name}' in the header (columns: {string.Join(", ", names)}).");

        var columns = textColumns.Select(c => new TextLoader.Column(c.Column, DataKind.String, Index(c.Header))).ToList();
        if (label is { } l) columns.Add(new TextLoader.Column(l.Column, l.Numeric ? DataKind.Single : DataKind.String, Index(l.Header)));
        var loader = ml.Data.CreateTextLoader(new TextLoader.Options { Columns = [.. columns], HasHeader = true, Separators = [separator], AllowQuoting = csv, TrimWhitespace = false });
        return loader.Load(path);
    }

    /// <summary>
    /// Refuses what ML.NET's loader would silently turn into different rows: a carriage return inside a line (it
    /// splits the row), an unbalanced quote in a CSV (it swallows the rest of the line), a row whose field count
    /// differs from the header's, and a file with a header but no rows.
    /// </summary>
    private static void CheckRows(string path, char separator, bool csv, int columns)
    {
        int number = 0, rows = 0;
        foreach (string line in LinesEndingInNewline(path))
        {
            number++;
            string text = line.EndsWith('\r') ? line[..^1] : line;   // CRLF line endings are fine
            if (text.Contains('\r')) throw new InvalidDataException($"{path}: line {number} has a carriage return inside it; remove it (it would split the row).");
            if (number == 1 || text.Length == 0) continue;
            rows++;
            if (csv && text.Count(c => c == '"') % 2 != 0) throw new InvalidDataException($"{path}: line {number} has an unbalanced quote (\").");
            int fields = csv ? CsvFields(text) : text.Count(c => c == separator) + 1;
            if (fields != columns) throw new InvalidDataException($"{path}: line {number} has {fields} fields, the header has {columns}.");
        }
        if (rows == 0) throw new InvalidDataException($"{path}: the file has a header but no rows.");
    }

    // StreamReader.ReadLine also ends a line at a lone '\r'; ML.NET's loader does too, which is what splits rows.
    private static IEnumerable<string> LinesEndingInNewline(string path)
    {
        using var reader = new StreamReader(path);
        var line = new System.Text.StringBuilder();
        var buffer = new char[1 << 16];
        int read;
        while ((read = reader.Read(buffer, 0, buffer.Length)) > 0)
            for (int i = 0; i < read; i++)
            {
                if (buffer[i] != '\n') { line.Append(buffer[i]); continue; }
                yield return line.ToString();
                line.Clear();
            }
        if (line.Length > 0) yield return line.ToString();
    }

    private static int CsvFields(string line)
    {
        int fields = 1;
        bool quoted = false;
        foreach (char c in line)
        {
            if (c == '"') quoted = !quoted;
            else if (c == ',' && !quoted) fields++;
        }
        return fields;
    }
}
