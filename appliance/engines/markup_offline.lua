-- Pictures a document links by URL (http:, ftp:, file:, ... anything with a scheme but
-- data:) become their description: a writer that embeds pictures (docx, odt, epub) would
-- fetch them, and a conversion fetches nothing. Run on the way to pandoc's JSON (markup.py):
-- pandoc fetches before filters when it writes those formats directly.
function Image(img)
  if img.src:match("^%a[%w+.-]*:") and not img.src:match("^data:") then
    return img.caption
  end
end
