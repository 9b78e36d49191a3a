package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

func init() {
	register(&command{
		name:    "completion",
		summary: "print a shell completion script for bash, zsh or fish (source it, or install it where the shell looks)",
		usage:   "bash|zsh|fish",
		run: func(_ context.Context, e *cmdEnv, _ any) error {
			if len(e.args) != 1 {
				return badInputf("want one shell: bash, zsh or fish")
			}
			switch e.args[0] {
			case "bash":
				writeBashCompletion(e.stdout)
			case "zsh":
				writeZshCompletion(e.stdout)
			case "fish":
				writeFishCompletion(e.stdout)
			default:
				return badInputf("shell %q: want bash, zsh or fish", e.args[0])
			}
			return nil
		},
	})
}

// completionFlag is one flag as the completion scripts see it.
type completionFlag struct {
	name, usage string
	takesValue  bool
}

// completionModel lists the registered commands and their flags, sorted.
func completionModel() ([]string, map[string][]completionFlag) {
	names := make([]string, 0, len(commands))
	flags := map[string][]completionFlag{}
	for n, c := range commands {
		names = append(names, n)
		fs, _, _ := newFlagSet(c, io.Discard)
		fs.VisitAll(func(f *flag.Flag) {
			_, u := flag.UnquoteUsage(f)
			flags[n] = append(flags[n], completionFlag{name: f.Name, usage: u, takesValue: !isBoolFlag(f)})
		})
	}
	sort.Strings(names)
	return names, flags
}

// grantValues are the values --grant completes to.
const grantValues = "client_credentials password jwt-bearer refresh_token"

func writeBashCompletion(w io.Writer) {
	names, flags := completionModel()
	fmt.Fprintf(w, "# bash completion for credbroker: source <(credbroker completion bash)\n")
	fmt.Fprintf(w, "_credbroker() {\n")
	fmt.Fprintf(w, "  local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"\"\n")
	fmt.Fprintf(w, "  [[ $COMP_CWORD -gt 0 ]] && prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n")
	fmt.Fprintf(w, "  if [[ $COMP_CWORD -eq 1 ]]; then\n    COMPREPLY=($(compgen -W %q -- \"$cur\"))\n    return\n  fi\n", strings.Join(names, " "))
	fmt.Fprintf(w, "  local flags=\"\" valued=\"\"\n  case \"${COMP_WORDS[1]}\" in\n")
	for _, n := range names {
		var all, valued []string
		for _, f := range flags[n] {
			all = append(all, "--"+f.name)
			if f.takesValue {
				valued = append(valued, "--"+f.name)
			}
		}
		fmt.Fprintf(w, "    %s) flags=%q; valued=%q ;;\n", n, strings.Join(all, " "), strings.Join(valued, " "))
	}
	fmt.Fprintf(w, "  esac\n")
	fmt.Fprintf(w, "  case \"$prev\" in\n")
	fmt.Fprintf(w, "    --grant) COMPREPLY=($(compgen -W %q -- \"$cur\")); return ;;\n", grantValues)
	fmt.Fprintf(w, "    --log-level) COMPREPLY=($(compgen -W \"debug info warn error\" -- \"$cur\")); return ;;\n")
	fmt.Fprintf(w, "    --log-format) COMPREPLY=($(compgen -W \"text json\" -- \"$cur\")); return ;;\n")
	fmt.Fprintf(w, "  esac\n")
	fmt.Fprintf(w, "  if [[ \" $valued \" == *\" $prev \"* ]]; then\n    COMPREPLY=($(compgen -f -- \"$cur\"))\n    return\n  fi\n")
	fmt.Fprintf(w, "  if [[ \"${COMP_WORDS[1]}\" == completion ]]; then\n    COMPREPLY=($(compgen -W \"bash zsh fish\" -- \"$cur\"))\n    return\n  fi\n")
	fmt.Fprintf(w, "  COMPREPLY=($(compgen -W \"$flags\" -- \"$cur\"))\n}\n")
	fmt.Fprintf(w, "complete -o default -F _credbroker credbroker\n")
}

func writeZshCompletion(w io.Writer) {
	names, flags := completionModel()
	fmt.Fprintf(w, "#compdef credbroker\n# zsh completion for credbroker: credbroker completion zsh > \"${fpath[1]}/_credbroker\"\n")
	fmt.Fprintf(w, "_credbroker() {\n  local -a cmds\n  cmds=(\n")
	for _, n := range names {
		fmt.Fprintf(w, "    %s\n", zshQuote(n+":"+commands[n].summary))
	}
	// _arguments sees the words after the command (else it takes the
	// command for a positional argument it has no spec for and completes
	// nothing).
	fmt.Fprintf(w, "  )\n  if (( CURRENT == 2 )); then\n    _describe 'command' cmds\n    return\n  fi\n  local cmd=${words[2]}\n  shift words\n  (( CURRENT-- ))\n  case $cmd in\n")
	for _, n := range names {
		fmt.Fprintf(w, "    %s)\n      _arguments", n)
		for _, f := range flags[n] {
			spec := "--" + f.name + "[" + zshEscape(f.usage) + "]"
			if f.takesValue {
				spec += ":value:"
				if f.name == "grant" {
					spec += "(" + grantValues + ")"
				} else {
					spec += "_files"
				}
			}
			fmt.Fprintf(w, " \\\n        %s", zshQuote(spec))
		}
		if n == "completion" {
			fmt.Fprintf(w, " \\\n        '1:shell:(bash zsh fish)'")
		}
		fmt.Fprintf(w, "\n      ;;\n")
	}
	fmt.Fprintf(w, "  esac\n}\ncompdef _credbroker credbroker\n")
}

func writeFishCompletion(w io.Writer) {
	names, flags := completionModel()
	fmt.Fprintf(w, "# fish completion for credbroker: credbroker completion fish > ~/.config/fish/completions/credbroker.fish\n")
	fmt.Fprintf(w, "complete -c credbroker -f\n")
	for _, n := range names {
		fmt.Fprintf(w, "complete -c credbroker -n __fish_use_subcommand -a %s -d %s\n", n, fishQuote(commands[n].summary))
	}
	for _, n := range names {
		for _, f := range flags[n] {
			line := fmt.Sprintf("complete -c credbroker -n '__fish_seen_subcommand_from %s' -l %s -d %s", n, f.name, fishQuote(f.usage))
			if f.takesValue {
				line += " -r"
				if f.name == "grant" {
					line += " -a " + fishQuote(grantValues)
				} else {
					line += " -F"
				}
			}
			fmt.Fprintln(w, line)
		}
	}
	fmt.Fprintf(w, "complete -c credbroker -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'\n")
}

func zshEscape(s string) string {
	return strings.NewReplacer("[", "\\[", "]", "\\]", ":", "\\:").Replace(s)
}

func zshQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(s) + "'"
}
