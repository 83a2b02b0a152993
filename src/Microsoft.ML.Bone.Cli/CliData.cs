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
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found.");
        bool csv = path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase);
        char separator = csv ? ',' : '\t';
        string header = File.ReadLines(path).FirstOrDefault() ?? throw new InvalidDataException($"{path}: the file is empty.");
        string[] names = header.Split(separator).Select(h => h.Trim().Trim('"')).ToArray();
        int Index(string name) => Array.IndexOf(names, name) is var i and >= 0 ? i : throw new ArgumentException($"{path}: no column '{name}' in the header (columns: {string.Join(", ", names)}).");

        var columns = textColumns.Select(c => new TextLoader.Column(c.Column, DataKind.String, Index(c.Header))).ToList();
        if (label is { } l) columns.Add(new TextLoader.Column(l.Column, l.Numeric ? DataKind.Single : DataKind.String, Index(l.Header)));
        var loader = ml.Data.CreateTextLoader(new TextLoader.Options { Columns = [.. columns], HasHeader = true, Separators = [separator], AllowQuoting = csv, TrimWhitespace = false });
        return loader.Load(path);
    }
}
