/**
 * What every command-line entry point shares: one error line instead of a stack trace for the
 * mistakes a user can fix, and a non-zero exit status.
 */

/**
 * Runs `main`, printing `error: <message>` and exiting with status 1 if it throws. Set
 * `DEBUG=1` to see the stack trace too.
 */
export async function runCli(main: () => Promise<void> | void): Promise<void> {
  try {
    await main();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`error: ${message}`);
    if (Deno.env.get("DEBUG") && error instanceof Error) console.error(error.stack);
    Deno.exit(1);
  }
}
