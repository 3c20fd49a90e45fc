"""Snapfit app entry point (also the Hugging Face Space entry): python app.py [--host H] [--port P] [--share]."""
import argparse
import os
import socket

from engine.hub import detect_offline

TUNNEL_HOST = "api.gradio.app"  # where Gradio asks for a share link


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the Snapfit app.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="ask Gradio for a public link")
    args = parser.parse_args()

    offline = detect_offline()  # must run before gradio/timm import huggingface_hub (see engine/hub.py)
    from demo import build_demo, launch_kwargs

    share = args.share and tunnel_reachable()
    demo = build_demo(offline=offline)
    _, local_url, share_url = demo.launch(server_name=args.host, server_port=args.port, share=share,
                                          prevent_thread_lock=True, **launch_kwargs())
    if args.share and not share_url:
        why = f"{TUNNEL_HOST} cannot be reached from this machine" if not share else "Gradio could not start the tunnel (see above)"
        print(f"No public link: {why}; the app runs locally at {local_url}", flush=True)
    demo.block_thread()


def tunnel_reachable(timeout: float = 3.0) -> bool:
    """Whether Gradio's share service answers at all: offline, asking it only prints a long error."""
    try:
        socket.create_connection((TUNNEL_HOST, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
