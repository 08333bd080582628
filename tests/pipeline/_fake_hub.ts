/**
 * A local stand-in for the Hugging Face hub, serving the two endpoints the download code uses:
 * the tree listing and `resolve` with HTTP range requests. It counts the bytes it serves so tests
 * can check that a sample is read by ranges, not downloaded whole.
 */

/** A running fake hub. */
export interface FakeHub {
  url: string;
  /** Bytes of file content served so far. */
  bytesServed: () => number;
  close: () => Promise<void>;
}

/** Serves `files` (path in the repo → bytes) as dataset `repo` on a free local port. */
export function serveFakeHub(repo: string, files: Record<string, Uint8Array>): FakeHub {
  let served = 0;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, (request) => {
    const url = new URL(request.url);
    const treePrefix = `/api/datasets/${repo}/tree/main/`;
    const resolvePrefix = `/datasets/${repo}/resolve/main/`;
    if (url.pathname.startsWith(treePrefix)) {
      const folder = decodeURIComponent(url.pathname.slice(treePrefix.length));
      const entries = Object.entries(files)
        .filter(([path]) => path.startsWith(`${folder}/`))
        .map(([path, bytes]) => ({ type: "file", path, size: bytes.length, oid: "0" }));
      return Response.json(entries);
    }
    if (url.pathname.startsWith(resolvePrefix)) {
      const bytes = files[decodeURIComponent(url.pathname.slice(resolvePrefix.length))];
      if (!bytes) {
        return new Response("not found", {
          status: 404,
          headers: { "X-Error-Code": "EntryNotFound" },
        });
      }
      const range = /bytes=(\d+)-(\d*)/.exec(request.headers.get("range") ?? "");
      const start = range ? Number(range[1]) : 0;
      const end = range && range[2] ? Math.min(Number(range[2]) + 1, bytes.length) : bytes.length;
      served += end - start;
      return new Response(bytes.slice(start, end), {
        status: range ? 206 : 200,
        headers: {
          "content-range": `bytes ${start}-${end - 1}/${bytes.length}`,
          "etag": '"fixture"',
          "accept-ranges": "bytes",
        },
      });
    }
    return new Response("not found", { status: 404 });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    bytesServed: () => served,
    close: () => server.shutdown(),
  };
}
