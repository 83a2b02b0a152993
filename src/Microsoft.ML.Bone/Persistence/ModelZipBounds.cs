using System.IO.Compression;

namespace Microsoft.ML.Bone.Persistence;

/// <summary>
/// ML.NET extracts every entry it reads from a model zip to a temporary file, trusting the size the zip declares.
/// Before a zip is handed to it, every entry's declared size is checked against what deflate can produce from its
/// compressed size (at most about 1032:1), so a crafted zip cannot fill the disk.
/// </summary>
internal static class ModelZipBounds
{
    public const long MaxDeflateRatio = 1100;

    /// <summary>Whether <paramref name="declared"/> bytes can come out of <paramref name="compressed"/> ones.</summary>
    public static bool Plausible(long declared, long compressed) => declared >= 0 && declared <= compressed * MaxDeflateRatio + 4096;

    /// <summary>Throws, naming <paramref name="source"/> and the entry, when an entry of the zip in <paramref name="stream"/> is implausible; leaves the stream where it was.</summary>
    public static void Check(Stream stream, string source)
    {
        if (!stream.CanSeek) return;
        long start = stream.Position;
        try
        {
            using var zip = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true);
            foreach (ZipArchiveEntry entry in zip.Entries)
                if (!Plausible(entry.Length, entry.CompressedLength))
                    throw new InvalidDataException($"{source}: the zip entry '{entry.FullName}' declares {entry.Length} bytes from {entry.CompressedLength} compressed ones, which no deflate stream produces: the zip is damaged or crafted (refused before extracting anything).");
        }
        catch (InvalidDataException e) when (!e.Message.StartsWith(source + ":", StringComparison.Ordinal))
        {
            throw new InvalidDataException($"{source}: not a readable model zip ({e.Message}).", e);
        }
        finally { stream.Position = start; }
    }
}
