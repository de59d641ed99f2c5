from appliance.conversions.operations.archive import _Chunks, member_names


def test_member_names_lose_directories_and_stay_unique():
    names = [
        "a.txt",
        "../../etc/a.txt",
        "dir\\A.TXT",
        "..",
        "/abs/noext",
        "noext",
        "\x00evil\n.png",
    ]
    assert member_names(names) == [
        "a.txt",
        "a-2.txt",
        "A-3.TXT",
        "file",
        "noext",
        "noext-2",
        "evil.png",
    ]


def test_chunk_reader_gives_exact_sizes_across_chunk_borders():
    reader = _Chunks(iter([b"abc", b"", b"defgh", b"ij"]))
    assert [reader.read(4), reader.read(4), reader.read(4), reader.read(4)] == [
        b"abcd",
        b"efgh",
        b"ij",
        b"",
    ]
